"""What the framework rooms above (``layers``, ``rewrite``, ``porting``) need from
each framework, written once per framework: a model's values as NumPy, the one walk
over a model's layers, evaluation mode, an input for a model.

One module per framework (:mod:`.torch`, :mod:`.keras`, :mod:`.flax`), each imported
only by a module that has already imported its framework.  They know no layer of
subpixel's: that is the rooms' above.
"""
