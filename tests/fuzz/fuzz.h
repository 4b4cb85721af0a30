/* fuzz: what every libFuzzer target in tests/fuzz/ defines. Each target is
 * one file fuzz_<name>.c, fed by tests/fuzz/corpus/<name>/ and replayed
 * against tests/fuzz/regressions/<name>/ by tests/fuzz/run.sh. A target must
 * not leak, keep state that changes what the next input does (beyond what a
 * real service would keep), or write outside its own temporary folder. */
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
