"""Post-training analyses (feature statistics, classifiers on features, tables)."""
