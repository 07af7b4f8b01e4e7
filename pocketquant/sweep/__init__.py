"""Sweeps beyond one machine: `dvc exp run -S` sweep points as Ray tasks, results via the DVC remote.

points.py (expansion, composition) -> pipeline.py (shared stages) -> driver.py (plan, run, pull back)
-> cluster.py (Ray) -> task.py (one clone on a worker) -> stagewise.py (reproduce and push per stage).
Importing this package imports neither Ray nor DVC (the CLI's --help stays fast).
"""
