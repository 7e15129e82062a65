"""Report: what people read about models and predictions (sentences, tables, figures, cards)."""
