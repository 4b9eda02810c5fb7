"""The Beam stages every alti2v job is built from, one module per concern, in an image's order.

elements (what passes between stages) → read (discover, decode, dedupe, split) →
vocabulary (from the train split) → write (serialise, shard) → metadata (written last);
files (the output directory), flags (the command line) and job (the builder base) around them.
"""
