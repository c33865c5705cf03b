"""Segments: a filter language over what we know of readers (``language``), its evaluation
over one reader's facts (``evaluate``, pure) and a count over the store (``count``)."""
