"""Building blocks of ``camcli evaluate`` (explanations scored against ground truth, and for
faithfulness) and ``camcli compare`` (two runs over the same images).

Light on import, like the rest of the command line: ``annotations``, ``gates``, ``schema`` and
``table`` need no torch; ``metrics`` and ``compare`` load it.
"""
