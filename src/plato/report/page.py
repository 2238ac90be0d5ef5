"""Pieces of the self-contained HTML page: inlined images, figures with captions, tables."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd


def slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts)).strip("_")


def img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def figure(path: Path, caption: str) -> str:
    """An inlined picture with its caption; its id (the file's stem, slugged) is what the
    interactive report links a cell's pictures to."""
    return (f'<figure id="{slug(path.stem)}">{img(path)}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>" for v in row)
        + "</tr>" for row in df.itertuples(index=False))
    return f'<table class="meta"><tr>{head}</tr>{body}</table>'
