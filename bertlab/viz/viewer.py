"""An attention viewer that works offline: one self-contained piece of HTML, SVG and JavaScript.

bertviz fetches its scripts from a CDN when it renders, so without internet access (or in a
JupyterLab that blocks them) it shows an empty cell. This viewer carries everything it needs:
its script and style come from ``bertlab/viz/viewer_assets`` and the attention weights are embedded
as JSON, so it displays inline in JupyterLab, Colab, VS Code and notebooks exported to HTML,
and :meth:`AttentionViewer.save_html` writes a page that opens from disk.

    >>> viewer = attention_viewer(model, tokenizer, "The cat sat.", "It purred.")
    >>> viewer                       # last expression of a cell: the interactive view
    >>> viewer.save_html("attention.html")
"""

from __future__ import annotations

import html
import json
import os
import uuid
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from bertlab.files import atomic_write
from bertlab.viz.attention import attention_for, check_layer_head, validated
from bertlab.viz.style import colours

DECIMALS = 3  # weights are embedded rounded: 3 decimals keep the page small and the lines exact


def head_colours(num_heads: int) -> list[str]:
    """One CSS colour per head: the course palette (``bertlab.viz.style.colours``)."""
    return colours(num_heads)


@cache
def _asset(name: str) -> str:
    return files("bertlab.viz").joinpath("viewer_assets", name).read_text(encoding="utf-8")


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' can end it early."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class AttentionViewer:
    """Interactive view of every layer and head of one input's attention.

    Pick a layer and a head (or all heads, overlaid in their colours), hover a token to see
    where it attends (left column) or what attends to it (right column), click to pin, and for
    a pair of texts show only A→A, A→B, B→A or B→B.

    Args:
        tokens: the input's tokens, e.g. ``tokenizer.convert_ids_to_tokens(ids)``.
        attentions: the model's ``outputs.attentions`` (tuple over layers of
            ``(1, heads, seq, seq)``) or an array ``(layers, heads, seq, seq)``.
        sentence_b_start: index of the first token of the second text; None for one text.
        layer, head: what to show first (``head=None``: all heads).
        title: an optional heading above the controls.

    ``viewer.data`` is the exact dict embedded in the page (weights rounded to 3 decimals),
    so a notebook can check what the viewer shows.
    """

    def __init__(self, tokens: list[str], attentions: Any, sentence_b_start: int | None = None,
                 *, layer: int = 0, head: int | None = None, title: str | None = None):
        tokens, array = validated(tokens, attentions, sentence_b_start)
        check_layer_head(array, layer, head)
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title must be a string or None, got {type(title).__name__}")
        num_layers, num_heads = array.shape[:2]
        self.data: dict[str, Any] = {
            "tokens": tokens,
            "sentence_b_start": None if sentence_b_start is None else int(sentence_b_start),
            "num_layers": num_layers,
            "num_heads": num_heads,
            "attentions": np.round(array.astype(np.float64), DECIMALS).tolist(),
            "head_colours": head_colours(num_heads),
            "layer": layer % num_layers,
            "head": None if head is None else head % num_heads,
            "title": title,
        }

    def __repr__(self) -> str:
        data = self.data

        def count(number: int, noun: str) -> str:
            return f"{number} {noun}" + ("" if number == 1 else "s")

        pair = "" if data["sentence_b_start"] is None else f", text B from token {data['sentence_b_start']}"
        return (f"AttentionViewer({count(len(data['tokens']), 'token')}, "
                f"{count(data['num_layers'], 'layer')} x {count(data['num_heads'], 'head')}{pair})")

    def html(self) -> str:
        """The viewer as an HTML fragment with fresh element ids (safe to show twice on a page)."""
        element_id = f"bertlab-attn-{uuid.uuid4().hex}"
        # The script finds its root by id (unique per call, so two viewers never clash);
        # currentScript is a fallback should a host rewrite ids.
        return (
            f'<div class="bertlab-attn" id="{element_id}">\n'
            f"<style>{_asset('viewer.css')}</style>\n"
            '<div class="ba-fallback">Attention viewer: its JavaScript did not run here. '
            "Run the cell in a trusted notebook, or open the page written by save_html().</div>\n"
            f'<script type="application/json" class="ba-data">{_json_for_script(self.data)}'
            "</script>\n"
            "<script>\n(function () {\n"
            f"{_asset('viewer.js')}\n"
            f'  var root = document.getElementById("{element_id}") ||\n'
            "    (document.currentScript && document.currentScript.parentNode);\n"
            "  try {\n    renderAttentionViewer(root);\n  } catch (error) {\n"
            '    var note = document.createElement("div");\n'
            '    note.className = "ba-error";\n'
            '    note.textContent = "Attention viewer failed: " + error;\n'
            "    root.appendChild(note);\n"
            "    throw error;\n  }\n})();\n</script>\n"
            "</div>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def page(self) -> str:
        """A complete standalone HTML page. Its Content-Security-Policy forbids every request."""
        title = html.escape(self.data["title"] or "Attention viewer")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n"
            "<style>body { margin: 24px; background: #f9fafb; }</style>\n"
            f"</head>\n<body>\n{self.html()}\n</body>\n</html>\n"
        )

    def save_html(self, path: str | os.PathLike) -> Path:
        """Write :meth:`page` to ``path`` (atomically: readers never see half a file)."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give a file name such as {path / 'attention.html'}")
        return atomic_write(path, self.page())


def attention_viewer(model: Any, tokenizer: Any, text_a: str, text_b: str | None = None,
                     **options) -> AttentionViewer:
    """Run ``model`` on one text or a pair and return an :class:`AttentionViewer` of it.

    ``options`` go to :class:`AttentionViewer` (``layer``, ``head``, ``title``).
    """
    return AttentionViewer(*attention_for(model, tokenizer, text_a, text_b), **options)
