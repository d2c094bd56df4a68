"""The JSON shapes of the REST API (pydantic): what OpenAPI documents and responses are checked against."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: a one-line message, a stable code, and for invalid parameters the details."""

    error: str = Field(description="what went wrong and what to do, in one line")
    code: str = Field(description="stable machine-readable code, e.g. bad_query, not_found, empty_library")
    detail: list[dict[str, Any]] | None = Field(None, description="per-parameter problems (validation errors)")


class TagOut(BaseModel):
    tag: str
    source: str | None = None
    score: float | None = None


class OcrLineOut(BaseModel):
    text: str
    box: list[list[float]] = Field(description="the line's 4 corners [x, y], fractions of the (EXIF-oriented) "
                                   "image's width and height")
    score: float = Field(description="the reader's confidence, 0-1")
    matched: bool = Field(description="the line holds a word of the query (or of its text: terms)")


class OcrOut(BaseModel):
    text: str = Field(description="every line read in the image, joined by line breaks")
    lines: list[OcrLineOut]


class HitOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    path: str
    score: float | None = Field(description="cosine similarity to the query (null when browsing)")
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="imported metadata (description, ...)")
    tags: list[TagOut] = Field(default_factory=list)
    rerank_score: float | None = None
    via: str | None = Field(None, description="which ranking put the hit where it is: vector, keyword, "
                            "vector+keyword (found by both, fused), tag (hard tags ranked by their words; "
                            "tag+keyword), rerank")
    source: str | None = Field(None, description="where the image came from when that is not its file: the URL "
                               "of an image downloaded from a URL list (`index --from-list`)")
    ocr: OcrOut | None = Field(None, description="the words read in the image (libraries indexed with --ocr); "
                               "null when none were read")
    matched_text: list[str] = Field(default_factory=list, description="the lines of `ocr` that hold a searched word")
    image_url: str = Field(description="the original image")
    thumbnail_url: str = Field(description="a small cached WebP/JPEG")


class SearchOut(BaseModel):
    query: str = Field(description="the query as searched (text, tags and uploaded image combined)")
    count: int
    took_ms: float
    hits: list[HitOut]
    note: str | None = Field(None, description="why there are no hits when filters or tags matched no image")
    next: str | None = Field(None, description="the token of the next page (pass it as `after` with the same "
                             "parameters); null on the last page and for date sorts")


class BrowseHitOut(HitOut):
    date: str | None = Field(None, description="what browsing sorts by: the date taken, else the file's time (UTC), "
                             "as YYYY-MM-DDTHH:MM:SS")


class BrowseOut(BaseModel):
    count: int
    took_ms: float
    hits: list[BrowseHitOut]
    next: str | None = Field(description="the cursor of the next page (pass it as `after`); null on the last page")


class ImageOut(BaseModel):
    """One indexed image: file facts, EXIF, imported fields and tags."""

    model_config = ConfigDict(extra="allow")

    id: int
    path: str
    name: str
    size: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    indexed_at: float | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    tags: list[TagOut] = Field(default_factory=list)
    ocr: OcrOut | None = Field(None, description="the words read in the image; null when none were read")
    image_url: str
    thumbnail_url: str


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(min_length=1, max_length=100, description="tags to add (trimmed, lower-cased)")


class TagsOut(BaseModel):
    id: int
    tags: list[TagOut]


class IndexStateOut(BaseModel):
    running: bool
    phase: str = Field(description="idle, scan, embed, fill (an image model's space for images indexed before it), "
                       "done or failed")
    done: int
    total: int
    errors: int
    folders: list[str]
    started_at: float | None = None
    finished_at: float | None = None
    report: dict[str, Any] | None = None
    error: str | None = None


class StatusOut(BaseModel):
    library: str
    model: str | None = None
    model_id: str | None = None
    dim: int | None = None
    image_model: dict[str, Any] | None = Field(default=None, description="the image-only model answering "
                                                "example-image queries (--image-model): name, model_id, space, dim")
    images: int
    errors: int
    disk_bytes: int
    last_run: dict[str, Any] | None = None
    ocr: bool = Field(False, description="index runs read the words in images (the library's OCR setting)")
    indexing: IndexStateOut
    writes_need_token: bool
    version: str


class ModelOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    backend: str | None = None
    dim: int | None = None
    size_mb: int | None = None
    available_offline: bool | None = None
    description: str | None = None


class ModelsOut(BaseModel):
    library_model: dict[str, Any] | None = Field(description="the model that made this library's vectors")
    models: list[ModelOut]


class IndexStartOut(BaseModel):
    started: bool
    indexing: IndexStateOut


ImageIdIn = Annotated[int, Field(ge=1, le=2**62)]


class BulkTagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[ImageIdIn] = Field(min_length=1, max_length=5000, description="indexed images' ids")
    add: list[str] = Field(default_factory=list, max_length=100, description="tags to add (source user)")
    remove: list[str] = Field(default_factory=list, max_length=100, description="tags to remove (any source)")


class BulkTagsOut(BaseModel):
    images: int = Field(description="how many images the change was applied to")
    added: int = Field(description="tag rows written")
    removed: int = Field(description="tag rows removed")
    tags: dict[str, list[TagOut]] = Field(description="each image's tags now, by id")


class DownloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[ImageIdIn] = Field(min_length=1, max_length=100_000, description="indexed images' ids")


class LabelOut(BaseModel):
    label: str
    probability: float


class PredictionOut(BaseModel):
    id: int | None = Field(None, description="the indexed image (null for an upload)")
    path: str = Field(description="its path, shown for people (empty for an upload)")
    labels: list[LabelOut] = Field(description="the most probable labels first")
    error: str | None = None


class ClassifyOut(BaseModel):
    labels: list[str] = Field(description="the labels classified between (cleaned, in order)")
    took_ms: float
    predictions: list[PredictionOut]


class LabelSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: str | list[str] = Field(description="the labels: comma-separated text or a list (at least two)")


class LabelSetsOut(BaseModel):
    sets: dict[str, list[str]] = Field(description="label set name -> its labels")


class ClassifyTagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[ImageIdIn] = Field(default_factory=list, max_length=5000, description="indexed images' ids")
    all: bool = Field(False, description="classify every image of the library instead of `ids`")
    labels: str = Field("", max_length=5000, description="comma-separated labels")
    labelset: str = Field("", max_length=64, description="or the name of a label set saved in the library")
    min_score: float = Field(0.3, gt=0, le=1, description="store a label as a tag from this probability on")


class ClassifyTagsOut(ClassifyOut):
    tags: dict[str, list[TagOut]] = Field(description="each image's tags now, by id (not with `all`)")
    report: dict[str, Any] | None = Field(None, description="with `all`: images, tags written, and per label the "
                                          "images whose best label it is")


class ErrorRowOut(BaseModel):
    path: str
    reason: str | None = None
    size: int | None = None
    at: float | None = None


class ErrorsOut(BaseModel):
    total: int = Field(description="files that could not be indexed")
    offset: int
    errors: list[ErrorRowOut]
    next: int | None = Field(description="the offset of the next page; null on the last")
