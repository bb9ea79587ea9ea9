"""Email open and click tracking: signed tokens and the HTML rewriting that places them."""

from __future__ import annotations

import secrets
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from api.support import NOW

from rapport.channels import tracking
from rapport.channels.tracking import CLICK, OPEN, TrackingError, instrument_html
from rapport.consent import links
from rapport.core import NewWorkspace, Rapport
from rapport.errors import ValidationError
from rapport.types import ProfileId, WorkspaceId

KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
WS = WorkspaceId("ws_1")
SEND = "9f86d081884c7d659a2feaa0c55ad015"
BASE = "https://rapport.shop.example"
OPEN_URL = f"{BASE}/t/o/OPEN"


def key_for(ws: WorkspaceId) -> bytes | None:
    return KEY if ws == WS else None


def click_url_for(url: str) -> str:
    return f"{BASE}/t/c/{tracking.click_token(KEY, WS, SEND, url)}"


# --- tokens -------------------------------------------------------------------------------------------------

def test_an_open_token_verifies_and_names_the_send() -> None:
    token = tracking.open_token(KEY, WS, SEND)
    assert tracking.verify(token, OPEN, key_for) == tracking.TrackingClaims(OPEN, WS, SEND)


def test_a_click_token_carries_its_url() -> None:
    url = "https://shop.example/cart?item=42&utm_source=email#top"
    claims = tracking.verify(tracking.click_token(KEY, WS, SEND, url), CLICK, key_for)
    assert (claims.kind, claims.workspace_id, claims.send_key, claims.url) == (CLICK, WS, SEND, url)


def test_tokens_are_deterministic_and_hold_nothing_personal() -> None:
    token = tracking.click_token(KEY, WS, SEND, "https://shop.example/")
    assert token == tracking.click_token(KEY, WS, SEND, "https://shop.example/")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1:]


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_any_changed_character_is_refused(where: str) -> None:
    token = tracking.click_token(KEY, WS, SEND, "https://shop.example/cart")
    payload, mac = token.split(".")
    for index in range(0, len(payload if where == "payload" else mac), 3):
        forged = f"{flip(payload, index)}.{mac}" if where == "payload" else f"{payload}.{flip(mac, index)}"
        with pytest.raises(TrackingError):
            tracking.verify(forged, CLICK, key_for)


def test_a_token_for_another_url_cannot_be_made_without_the_key() -> None:
    """Swapping the signed URL for another (an open redirect) breaks the MAC."""
    genuine = tracking.click_token(KEY, WS, SEND, "https://shop.example/cart")
    evil = tracking.click_token(OTHER_KEY, WS, SEND, "https://evil.example/")
    forged = f"{evil.split('.')[0]}.{genuine.split('.')[1]}"
    with pytest.raises(TrackingError) as caught:
        tracking.verify(forged, CLICK, key_for)
    assert caught.value.code == "invalid_tracking_signature"
    assert caught.value.status == 400


def test_another_workspaces_key_and_unknown_workspaces_are_refused() -> None:
    with pytest.raises(TrackingError):
        tracking.verify(tracking.open_token(OTHER_KEY, WS, SEND), OPEN, key_for)
    with pytest.raises(TrackingError):
        tracking.verify(tracking.open_token(KEY, WorkspaceId("ws_unknown"), SEND), OPEN, key_for)


def test_an_open_token_is_not_a_click_token() -> None:
    with pytest.raises(TrackingError, match="wrong kind"):
        tracking.verify(tracking.open_token(KEY, WS, SEND), CLICK, key_for)


def test_a_preference_link_token_is_not_a_tracking_token() -> None:
    link = links.make_token(KEY, WS, ProfileId("prof_1"), NOW)
    with pytest.raises(TrackingError):
        tracking.verify(link, OPEN, key_for)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.abc", "x" * 5000, "e30.AAAA", "W10.AAAA",
                                   "WzEsIm8iLCJ3c18xIl0.AAAA"],
                         ids=["empty", "one-part", "three-parts", "not-base64", "too-long", "object", "empty-list",
                              "short-payload"])
def test_malformed_tokens_are_refused_with_the_tracking_code(token: str) -> None:
    with pytest.raises(TrackingError) as caught:
        tracking.verify(token, OPEN, key_for)
    assert caught.value.code in ("invalid_tracking_token", "invalid_tracking_signature")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "mailto:a@b.example", "/relative", "https://",
                                 "https://shop.example/\r\nSet-Cookie: x=1", "ftp://shop.example/"])
def test_only_absolute_web_urls_can_be_signed(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        tracking.click_token(KEY, WS, SEND, url)
    assert caught.value.code == "invalid_tracked_url"


def test_the_tracking_key_is_per_workspace_and_not_the_link_key(rapport: Rapport, workspace: NewWorkspace) -> None:
    rt = rapport.runtime(workspace.workspace_id)
    other = rapport.create_workspace(f"other-{secrets.token_hex(4)}")
    key = tracking.tracking_key(rapport.keyring, rt)
    assert len(key) == 32 and key == tracking.tracking_key(rapport.keyring, rt)
    assert key != links.link_key(rapport.keyring, rt)
    assert key != tracking.tracking_key(rapport.keyring, rapport.runtime(other.workspace_id))


def test_tracking_urls_sign_open_and_click_under_the_base(rapport: Rapport, workspace: NewWorkspace) -> None:
    rt = rapport.runtime(workspace.workspace_id)
    urls = tracking.tracking_urls(BASE + "/", rt, SEND, keyring=rapport.keyring)
    key = tracking.tracking_key(rapport.keyring, rt)

    def own(ws: WorkspaceId) -> bytes | None:
        return key if ws == rt.id else None

    assert urls.open_url.startswith(f"{BASE}/t/o/")
    assert tracking.verify(urls.open_url.rsplit("/", 1)[1], OPEN, own).send_key == SEND
    click = urls.click_url_for("https://shop.example/cart")
    assert click.startswith(f"{BASE}/t/c/")
    assert tracking.verify(click.rsplit("/", 1)[1], CLICK, own).url == "https://shop.example/cart"
    with pytest.raises(ValidationError):
        tracking.tracking_urls("shop.example", rt, SEND, keyring=rapport.keyring)


# --- HTML ------------------------------------------------------------------------------------------------------

EMAIL = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
  "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" lang="fr">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<title>Votre panier — Shop</title>
<style type="text/css">a[href^="https://shop.example"] { color: #c00; } .btn { padding: 8px; }</style>
<script type="text/javascript">var tpl = '<a href="https://in.script.example/">x</a>';</script>
</head>
<body style="margin:0">
<!--[if mso]><v:roundrect href="https://shop.example/outlook-button"></v:roundrect><![endif]-->
<!-- <a href="https://commented.example/">old</a> -->
<table role="presentation" width="100%"><tr><td>
  <p>Bonjour Zoë, votre panier vous attend&nbsp;!</p>
  <a class="btn" title="see href=https://evil.example" href="https://shop.example/cart?id=42&amp;utm_source=email"
     target="_blank">Voir le panier</a>
  <a HREF='https://shop.example/product/héros'>Héros</a>
  <a href=https://shop.example/unquoted>unquoted</a>
  <a href="HTTPS://SHOP.EXAMPLE/LOUD">loud</a>
  <a href="mailto:help@shop.example?subject=Panier">Aide</a>
  <a href="tel:+33123456789">Appeler</a>
  <a href="#top">Haut</a> <a href="/relative/path">relatif</a> <a name="anchor">no href</a>
  <a
     data-href="https://shop.example/data"
     href="https://shop.example/multi-line">multi</a>
  <img src="https://shop.example/logo.png" alt="Shop"/>
</td></tr></table>
<p><a href="https://rapport.shop.example/unsubscribe/TOKEN?purpose=marketing_email">Se désabonner</a>
 · <a href="https://rapport.shop.example/preferences/TOKEN">Préférences</a>
 · <a href="https://shop.example/keep-me">kept</a></p>
</body>
</html>
"""


class Links(HTMLParser):
    """What a browser would see: every ``<a href>`` and ``<img src>`` outside comments and scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href") is not None:
            self.hrefs.append(str(values["href"]))
        if tag == "img":
            self.images.append(str(values.get("src")))


def parsed(html: str) -> Links:
    found = Links()
    found.feed(html)
    found.close()
    return found


def targets(html: str) -> list[str]:
    """Each link's destination: a click URL's signed target, or the href itself."""
    out = []
    for href in parsed(html).hrefs:
        if href.startswith(f"{BASE}/t/c/"):
            claims = tracking.verify(href.rsplit("/", 1)[1], CLICK, key_for)
            out.append(f"tracked:{claims.url}")
        else:
            out.append(href)
    return out


def test_a_real_email_gets_its_web_links_tracked_and_nothing_else() -> None:
    out = instrument_html(EMAIL, OPEN_URL, click_url_for, keep=["https://shop.example/keep-me"])
    assert targets(out) == [
        "tracked:https://shop.example/cart?id=42&utm_source=email",  # entities decoded before signing
        "tracked:https://shop.example/product/héros",
        "tracked:https://shop.example/unquoted",
        "tracked:HTTPS://SHOP.EXAMPLE/LOUD",
        "mailto:help@shop.example?subject=Panier",
        "tel:+33123456789",
        "#top",
        "/relative/path",
        "tracked:https://shop.example/multi-line",
        "https://rapport.shop.example/unsubscribe/TOKEN?purpose=marketing_email",
        "https://rapport.shop.example/preferences/TOKEN",
        "https://shop.example/keep-me",
    ]


def test_everything_but_the_rewritten_hrefs_and_the_pixel_is_unchanged() -> None:
    out = instrument_html(EMAIL, OPEN_URL, click_url_for)
    # The rest of each rewritten tag stays: other attributes, their order, the line breaks inside the tag.
    assert 'class="btn" title="see href=https://evil.example" href="' in out
    assert '"\n     target="_blank">Voir le panier</a>' in out
    assert 'data-href="https://shop.example/data"\n     href="' in out
    for untouched in ("<!-- <a href=\"https://commented.example/\">old</a> -->",
                      "<v:roundrect href=\"https://shop.example/outlook-button\">",
                      "var tpl = '<a href=\"https://in.script.example/\">x</a>';",
                      'a[href^="https://shop.example"] { color: #c00; }',
                      "<p>Bonjour Zoë, votre panier vous attend&nbsp;!</p>"):
        assert untouched in out
    # Removing the additions gives the original back.
    restored = out.replace(tracking.pixel(OPEN_URL), "")
    for href in parsed(out).hrefs:
        if href.startswith(f"{BASE}/t/c/"):
            url = tracking.verify(href.rsplit("/", 1)[1], CLICK, key_for).url
            assert url is not None
            restored = restored.replace(f'"{href}"', f'"{url}"', 1)
    assert restored.replace('"https://shop.example/cart?id=42&utm_source=email"',
                            '"https://shop.example/cart?id=42&amp;utm_source=email"') \
        .replace('HREF="https://shop.example/product/héros"', "HREF='https://shop.example/product/héros'") \
        .replace('href="https://shop.example/unquoted"', "href=https://shop.example/unquoted") == EMAIL


def test_the_pixel_sits_just_before_the_closing_body() -> None:
    out = instrument_html(EMAIL, OPEN_URL, click_url_for)
    assert out.count(tracking.pixel(OPEN_URL)) == 1
    assert out.endswith(tracking.pixel(OPEN_URL) + "</body>\n</html>\n")
    assert parsed(out).images == ["https://shop.example/logo.png", OPEN_URL]


def test_without_a_body_tag_the_pixel_goes_at_the_end() -> None:
    html = '<p>Hi <a href="https://shop.example/">shop</a></p>'
    out = instrument_html(html, OPEN_URL, click_url_for)
    assert out.endswith("</p>" + tracking.pixel(OPEN_URL))
    assert targets(out) == ["tracked:https://shop.example/"]


def test_the_last_body_end_counts_and_case_does_not_matter() -> None:
    html = "<html><BODY><p>x</p><!-- </body> --></Body></html>"
    out = instrument_html(html, OPEN_URL, click_url_for)
    assert out == f"<html><BODY><p>x</p><!-- </body> -->{tracking.pixel(OPEN_URL)}</Body></html>"


def test_windows_line_endings_and_wide_characters_keep_offsets_right() -> None:
    html = ("<html>\r\n<body>\r\n<p>日本語のテキスト 🎉</p>\r\n<p>Ünïcödé <a href=\"https://shop.example/a\">a</a>"
            "</p>\r\n<a\r\n href='https://shop.example/b'>b</a>\r\n</body>\r\n</html>")
    out = instrument_html(html, OPEN_URL, click_url_for)
    assert targets(out) == ["tracked:https://shop.example/a", "tracked:https://shop.example/b"]
    assert "<p>日本語のテキスト 🎉</p>\r\n<p>Ünïcödé <a href=\"" in out
    assert out.endswith(f"{tracking.pixel(OPEN_URL)}</body>\r\n</html>")


def test_a_click_url_with_html_special_characters_is_escaped_in_the_attribute() -> None:
    out = instrument_html('<a href="https://shop.example/">x</a>', OPEN_URL, lambda url: f'{BASE}/t/c/a"b&c<d>')
    assert '<a href="https://rapport.shop.example/t/c/a&quot;b&amp;c&lt;d&gt;">x</a>' in out
    assert parsed(out).hrefs == [f'{BASE}/t/c/a"b&c<d>']


def test_links_without_a_usable_href_are_left_alone() -> None:
    html = ('<a href>empty</a><a href="">blank</a><a href="https://a.example/" href="https://b.example/">two</a>'
            '<a href="  https://shop.example/spaced  ">spaced</a><a href="javascript:alert(1)">js</a>')
    out = instrument_html(html, OPEN_URL, click_url_for)
    assert out.startswith('<a href>empty</a><a href="">blank</a>'
                          '<a href="https://a.example/" href="https://b.example/">two</a>')
    assert targets(out)[-2] == "tracked:https://shop.example/spaced"
    assert '<a href="javascript:alert(1)">js</a>' in out


def test_the_pixel_url_is_escaped() -> None:
    assert 'src="https://t.example/o?a=1&amp;b=&quot;2&quot;"' in tracking.pixel('https://t.example/o?a=1&b="2"')


def test_tracked_urls_point_at_the_tracking_host() -> None:
    out = instrument_html(EMAIL, OPEN_URL, click_url_for)
    hosts = {urlsplit(h).netloc for h in parsed(out).hrefs if h.startswith("https://")}
    assert hosts == {"rapport.shop.example"}  # every web link is tracked or one of Rapport's own
