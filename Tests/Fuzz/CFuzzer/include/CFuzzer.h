// libFuzzer's entry for a program with a main of its own (SwiftPM names every executable's entry point).
#ifndef APPROVALD_CFUZZER_H
#define APPROVALD_CFUZZER_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test_one_input)(const uint8_t *data, size_t size));
#endif
