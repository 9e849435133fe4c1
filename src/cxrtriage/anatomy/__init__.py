"""Anatomy stage: the bundled lung-and-heart segmentation (``segmenter``) and what is measured from it
(``measure``: lung fields, cardiothoracic ratio, anatomical zones, the two-lungs frontal check)."""
