"""Datasets: the layout contract, reading one (local or on the Hub), choosing a source."""
