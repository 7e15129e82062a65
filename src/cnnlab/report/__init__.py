"""Report: what people read about models and predictions (sentences, tables, figures, cards),
and runs side by side (report.runs: the table and curves of `cnnlab runs` and the Runs page)."""
