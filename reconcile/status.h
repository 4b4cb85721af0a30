/* status: `matrixrmapi status [--json]`: desired vs last observed per user and
 * room, pending differences, the last pass and recent failures, read from the
 * store's status_* views. */
#pragma once

struct config;

/* Prints to stdout. Returns 0, or -1 when the database cannot be read. */
int status_print(const struct config *cfg, int json);
