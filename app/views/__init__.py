"""Renderers of the explanation stages on a participant's item page.

``overview`` composes U (``unimodal``) and C (``interaction``); ``features`` composes
R_l and R_g per feature and P (``prediction``). Each renderer draws only from a bundle
and its arrays, and shows only the stages it is given.
"""
