"""Arguments shared by several fields, described once."""

from __future__ import annotations

from typing import Annotated

import strawberry

UuidArg = Annotated[strawberry.ID, strawberry.argument(description="The video's uuid.")]
PageArg = Annotated[int, strawberry.argument(description="Page number, from 1.")]
PageSizeArg = Annotated[int, strawberry.argument(description="Items per page, 1 to 100.")]
