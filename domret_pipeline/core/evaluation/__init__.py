"""Measuring (asset ``evaluation_report``): ranking metrics, paired significance tests,
embedding-space diagnostics and plots, the retrievers side by side on the frozen split,
end-to-end answer evaluation, and the report rendered as Markdown and HTML.
"""
