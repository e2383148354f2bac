/* auth */
#include "internal.h"
