#include "ef_test.h"

#include "elasticflow.h"

void suite_auth(ef_t *t) { (void)t; }
