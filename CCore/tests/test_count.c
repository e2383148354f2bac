#include "ef_test.h"

#include "elasticflow.h"

void suite_count(ef_t *t) { (void)t; }
