print('not written'); raise SystemExit(1)
