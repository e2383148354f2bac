#include "ef_test.h"

#include "elasticflow.h"

void suite_codec(ef_t *t) { (void)t; }
