/* loop */
#include "internal.h"
