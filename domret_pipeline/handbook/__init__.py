"""The generator of the bundled sample data set (``domret sample``): an engineering handbook of
a fictional logistics company, in domret_pipeline/sample_data/handbook."""
