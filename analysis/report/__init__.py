"""The analysis report: its content from the tasks' JSON, the strategy comparison, rendering.

- :mod:`analysis.report.build`: per-network summaries and the page (:func:`build_report`);
- :mod:`analysis.report.comparison`: sigma_mu of each strategy against CE, fold by fold;
- :mod:`analysis.report.blocks`: headings, paragraphs, tables, images; Markdown and HTML.
"""

from analysis.report.blocks import (
    Block,
    Heading,
    Image,
    Paragraph,
    Table,
    copy_images,
    image_name,
    render_html,
    render_markdown,
)
from analysis.report.build import (
    NetworkFigures,
    build_report,
    format_number,
    impact_cell,
    network_key,
    network_summary,
    tradeoff_table,
)
from analysis.report.comparison import (
    fold_agreement,
    strategy_comparison,
    strategy_verdict,
    uncertainty_breakdown,
)

__all__ = ["Block", "Heading", "Image", "NetworkFigures", "Paragraph", "Table", "build_report",
           "copy_images", "fold_agreement", "format_number", "image_name", "impact_cell",
           "network_key", "network_summary", "render_html", "render_markdown",
           "strategy_comparison", "strategy_verdict", "tradeoff_table", "uncertainty_breakdown"]
