"""Tables printed by the seed article's code, shared by the tests that reproduce them."""

# The learning-rate schedule comparison (initial lr 0.001, 100 epochs, 10 warmup), line by line.
SEED_SCHEDULE_TABLE = """\
 Epoch     Step   Cosine  Warmup+Cos
--------------------------------------
     0 0.001000 0.001000    0.000000
     5 0.001000 0.000994    0.000500
    10 0.001000 0.000976    0.001000
    20 0.001000 0.000905    0.000970
    30 0.000500 0.000794    0.000883
    50 0.000500 0.000501    0.000587
    70 0.000250 0.000207    0.000251
    90 0.000125 0.000025    0.000031
    99 0.000125 0.000001    0.000001""".splitlines()
