"""The console notifier: without a bot token (the embedded demo), messages are printed instead.

Same rendering as Telegram: the HTML is turned into rich text, buttons are listed under it, and
a link's address is shown after it, since a terminal may not make it clickable.
"""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser

from rich.console import Console
from rich.panel import Panel
from rich.style import Style
from rich.text import Text

from lawscreen.notify.render import Part

STYLES = {
    "b": Style(bold=True),
    "strong": Style(bold=True),
    "i": Style(italic=True),
    "em": Style(italic=True),
    "u": Style(underline=True),
    "s": Style(strike=True),
    "code": Style(color="cyan"),
    "pre": Style(color="cyan"),
}


class ConsoleSender:
    name = "console"

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    async def send(self, chat_id: int, parts: Sequence[Part]) -> int | None:
        for part in parts:
            buttons = "  ".join(f"[{button.text}]" for row in part.keyboard for button in row)
            self.console.print(
                Panel(to_rich(part.text), title=f"chat {chat_id}", subtitle=buttons or None, expand=False)
            )
        return None


def to_rich(html: str) -> Text:
    parser = _RichParser()
    parser.feed(html)
    parser.close()
    return parser.text


class _RichParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = Text()
        self._styles: list[Style] = []
        self._hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href") if tag == "a" else None
        self._styles.append(
            Style(underline=True, color="blue", link=href) if href else STYLES.get(tag, Style())
        )
        self._hrefs.append(href)

    def handle_endtag(self, tag: str) -> None:
        if self._styles:
            self._styles.pop()
            href = self._hrefs.pop()
            if href:
                self.text.append(f" ({href})", Style(dim=True))

    def handle_data(self, data: str) -> None:
        self.text.append(data, Style.combine(self._styles) if self._styles else None)
