"""The analysis report: its content from the tasks' JSON, the strategy comparison, rendering.

- :mod:`analysis.report.network_results`: each network's task outputs, gathered for the page;
- :mod:`analysis.report.build`: per-network summaries and the page (:func:`build_report`);
- :mod:`analysis.report.comparison`: sigma_mu of each strategy against CE, paired over
  (seed, fold) networks;
- :mod:`analysis.report.dependence`: the shape change of each network's output per systematic;
- :mod:`analysis.report.matched_size`: the DNN's and the GNN's held-out AUCs, the GNN's target;
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
    comparison_points,
    dependence_table,
    format_number,
    headline,
    impact_cell,
    network_key,
    network_summary,
    pairing_table,
    tradeoff_table,
)
from analysis.report.comparison import (
    paired_comparison,
    strategy_pairings,
    uncertainty_breakdown,
)
from analysis.report.dependence import dependence_over_folds, systematic_dependence
from analysis.report.network_results import (
    NetworkResults,
    collect_networks,
    parameter_counts,
)

__all__ = ["Block", "Heading", "Image", "NetworkFigures", "NetworkResults", "Paragraph", "Table",
           "build_report", "collect_networks", "comparison_points", "copy_images",
           "dependence_over_folds", "dependence_table", "format_number", "headline", "image_name", "impact_cell",
           "network_key", "network_summary", "paired_comparison", "pairing_table",
           "parameter_counts", "render_html", "render_markdown", "strategy_pairings",
           "systematic_dependence", "tradeoff_table", "uncertainty_breakdown"]
