"""Serving a trained run over HTTP: answers.py (what a run says about uploaded images, per task)
and app.py (the FastAPI app: the tagging page and its JSON API), used by `python -m alti2v.serve`.
"""
