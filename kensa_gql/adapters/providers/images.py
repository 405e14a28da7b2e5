"""Start images shaped the way a vendor insists on (OpenAI: exactly the output size)."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from kensa_gql.domain.errors import ContentRejected

# A 10 MB PNG can decode to gigabytes; refuse anything larger than a generous 8K frame.
MAX_PIXELS = 7680 * 4320


def fit_png(data: bytes, width: int, height: int) -> bytes:
    """Scale and centre-crop the image to exactly ``width`` x ``height``; return it as PNG."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ContentRejected(f"start image: larger than {MAX_PIXELS} pixels")
            upright = ImageOps.exif_transpose(image)
            fitted = ImageOps.fit(upright.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ContentRejected("start image: not a readable image") from exc
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()
