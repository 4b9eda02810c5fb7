"""Reports as pictures: a dataset's or a training run's figures in one report.html (`python -m
alti2v.report`). panels.py is what a task gives; plots.py and html.py draw it; build.py gathers it.
"""
