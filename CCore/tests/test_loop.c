#include "ef_test.h"

#include "elasticflow.h"

void suite_loop(ef_t *t) { (void)t; }
