"""Page arguments shared by every list: 1-based pages, capped page sizes."""

from __future__ import annotations

from dataclasses import dataclass

from kensa_gql.domain.errors import BadUserInput

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Page:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def page_of(page: object, page_size: object) -> Page:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1 or page > 10_000_000:
        raise BadUserInput("page: must be an integer >= 1", field="page")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadUserInput(f"pageSize: must be an integer from 1 to {MAX_PAGE_SIZE}", field="pageSize")
    return Page(page, page_size)
