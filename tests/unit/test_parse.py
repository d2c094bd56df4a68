"""The query language: terms, operators, weights, quotes, tags, paths with spaces, and errors that point at the term."""
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picseek.errors import UsageError
from picseek.query.parse import ID, IMAGE, TAG, TEXT, URL, Query, QueryError, Term, parse

from conftest import draw_photo


def kinds(q: Query) -> list[tuple[str, str, float]]:
    return [(t.kind, t.value, t.weight) for t in q.terms]


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """me.jpg and 'my photos/a b.jpg' below the current folder."""
    monkeypatch.chdir(tmp_path)
    draw_photo("red").save(tmp_path / "me.jpg")
    (tmp_path / "my photos").mkdir()
    draw_photo("blue").save(tmp_path / "my photos" / "a b.jpg")
    return tmp_path


def test_image_plus_words_minus_words(photos):
    q = parse('./me.jpg + "in winter" - people')
    assert kinds(q) == [(IMAGE, str(photos / "me.jpg"), 1.0), (TEXT, "in winter", 1.0), (TEXT, "people", -1.0)]
    assert not q.is_image_only and q.words == "in winter"


def test_what_the_shell_leaves_parses_the_same(photos):
    # picseek search ./me.jpg + "in winter" - people  ->  argv joined with spaces (the quotes are gone)
    assert kinds(parse(" ".join(["./me.jpg", "+", "in winter", "-", "people"]))) == \
        kinds(parse('./me.jpg + "in winter" - people'))
    # picseek search "a dog" + "a cat"
    assert kinds(parse(" ".join(["a dog", "+", "a cat"]))) == [(TEXT, "a dog", 1.0), (TEXT, "a cat", 1.0)]


def test_bare_words_form_one_text_term_until_an_operator():
    assert kinds(parse("a red car at night")) == [(TEXT, "a red car at night", 1.0)]
    assert kinds(parse("a t-shirt - c++ books")) == [(TEXT, "a t-shirt", 1.0), (TEXT, "c++ books", -1.0)]


def test_a_path_with_spaces_is_one_image_even_unquoted(photos):
    target = str(photos / "my photos" / "a b.jpg")
    assert kinds(parse("./my photos/a b.jpg")) == [(IMAGE, target, 1.0)]
    assert kinds(parse('"my photos/a b.jpg"')) == [(IMAGE, target, 1.0)]
    assert kinds(parse("./my photos/a b.jpg in winter")) == [(IMAGE, target, 1.0), (TEXT, "in winter", 1.0)]
    assert kinds(parse(f"a photo like {target}")) == [(TEXT, "a photo like", 1.0), (IMAGE, target, 1.0)]


def test_weights_signs_and_their_combinations(photos):
    q = parse('2:"at night" 0.5:./me.jpg -0.5:people - 3:cars + id:7')
    assert kinds(q) == [(TEXT, "at night", 2.0), (IMAGE, str(photos / "me.jpg"), 0.5), (TEXT, "people", -0.5),
                        (TEXT, "cars", -3.0), (ID, "7", 1.0)]
    assert kinds(parse("1e-1:cats")) == [(TEXT, "cats", 0.1)]
    assert kinds(parse("10:30 train")) == [(TEXT, "10:30 train", 1.0)]  # a time, not a weight
    assert kinds(parse("note: bring a hat")) == [(TEXT, "note: bring a hat", 1.0)]


def test_attached_signs_and_quotes():
    assert kinds(parse('beach -"people" +"sunset" -tag:night')) == [
        (TEXT, "beach", 1.0), (TEXT, "people", -1.0), (TEXT, "sunset", 1.0), (TAG, "night", -1.0)]
    assert kinds(parse("'a dog'+'a cat'")) == [(TEXT, "a dog", 1.0), (TEXT, "a cat", 1.0)]
    assert kinds(parse(r'"say \"cheese\""')) == [(TEXT, 'say "cheese"', 1.0)]
    assert kinds(parse("a dog's toy")) == [(TEXT, "a dog's toy", 1.0)]  # an apostrophe inside a word


def test_tags_ids_and_urls():
    q = parse('tag:Beach tag:"New  York" sunset id:0042 https://example.com/a.jpg')
    assert kinds(q) == [(TAG, "beach", 1.0), (TAG, "new york", 1.0), (TEXT, "sunset", 1.0), (ID, "42", 1.0),
                        (URL, "https://example.com/a.jpg", 1.0)]
    assert q.tags == ("beach", "new york") and q.excluded_tags == ()
    assert kinds(parse('"tag:beach"')) == [(TEXT, "tag:beach", 1.0)]  # quoted: literal words
    soft = parse("tag:beach - tag:people").with_soft_tags()
    assert kinds(soft) == [(TEXT, "beach", 1.0), (TEXT, "people", -1.0)]


def test_image_only_queries(photos):
    assert parse("./me.jpg + id:3").is_image_only
    assert not parse("./me.jpg + snow").is_image_only
    assert not parse("tag:beach").is_image_only  # no vector term at all


def test_path_objects_are_one_image(photos):
    assert kinds(parse(photos / "my photos" / "a b.jpg")) == [(IMAGE, str(photos / "my photos" / "a b.jpg"), 1.0)]


@pytest.mark.parametrize("query, message, column", [
    ('./me.jpg + "in winter', "unbalanced", 12),
    ("'a dog", "unbalanced", 1),
    ('abc:"x"', "not a number", 1),
    ("cats + 2x:dogs", "not a number", 8),
    ("1.2.3:dogs", "not a number", 1),
    ('nan:"dogs"', "not a finite number", 1),
    ("1e999:dogs", "not a finite number", 1),
    ("cats +", "needs a term", 6),
    ("cats + - dogs", "needs a term", 6),
    ("2:", None, None),
    ("id:abc", "an id is a number", 1),
    ("tag:", "needs a name", 1),
    ('"a dog"s', "space after the closing quote", 8),
    ('""', "empty quotes", 1),
    ("- cats", "positive weight", 3),
    ("cats ./nope/x.jpg", "not found", 6),
])
def test_malformed_queries_name_the_column(photos, query, message, column):
    if message is None:  # "2:" alone is just text
        assert kinds(parse(query)) == [(TEXT, "2:", 1.0)]
        return
    with pytest.raises(QueryError, match=message) as err:
        parse(query)
    assert f"column {column}" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, UsageError)


def test_folders_and_missing_images_are_errors(photos):
    with pytest.raises(UsageError, match="folder"):
        parse(str(photos / "my photos"))
    with pytest.raises(UsageError, match="not found"):
        parse("missing.png")
    assert kinds(parse("sunset.jpg in the style of")) == [(TEXT, "sunset.jpg in the style of", 1.0)]
    with pytest.raises(UsageError, match="empty query"):
        parse("  ")


def test_terms_compare_without_positions():
    assert parse("  cats") .terms[0] == Term(TEXT, "cats") and parse("  cats").terms[0].pos == 2


ALPHABET = st.sampled_from(list("ab \"'+-:.0123456789/~\\tgidhps*()\t\n") + ["tag:", "id:", "http://x/",
                                                                             "./", "é", "\x00", "\ud800"])


@settings(max_examples=600, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_the_parser_never_crashes(text):
    try:
        q = parse(text)
    except UsageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(q, Query) and q.terms
    assert any(t.weight > 0 for t in q.terms)
    for t in q.terms:
        assert t.kind in (TEXT, IMAGE, URL, ID, TAG) and t.value and 0 <= t.pos < len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_the_parser_never_crashes_on_any_text(text):
    try:
        assert parse(text).terms
    except UsageError:
        pass


def test_the_parser_is_not_fooled_by_the_current_folder(tmp_path, monkeypatch):
    """A plain word that happens to name a file here stays a word (only image-looking paths become images)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cats").write_text("not an image")
    assert kinds(parse("cats")) == [(TEXT, "cats", 1.0)]
    assert os.path.exists("cats")


def test_text_terms_are_the_words_read_in_images():
    from picseek.query.parse import parse
    from picseek.request import IN_TEXT, TEXT

    q = parse('receipt text:"total due" -text:void')
    assert [(t.kind, t.value, t.weight) for t in q.terms] == [(TEXT, "receipt", 1.0), (IN_TEXT, "total due", 1.0),
                                                              (IN_TEXT, "void", -1.0)]
    assert q.in_text == (("total due", True), ("void", False)) and q.without_in_text().words == "receipt"
    with pytest.raises(UsageError, match="text: needs the words"):
        parse('text:"  "')
