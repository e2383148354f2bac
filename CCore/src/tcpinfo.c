/* The kernel's view of a TCP connection's delivery rate (TCP_INFO), for --compression auto.
 *
 * A file of its own because <linux/tcp.h> (which has tcpi_delivery_rate and its app-limited
 * bit, Linux 4.9+) and glibc's <netinet/tcp.h> (which net.c needs) both define struct tcp_info. */
#include "loop_internal.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int ef__tcp_delivery_rate(int fd, uint64_t *bytes_per_second, int *app_limited) {
    struct tcp_info info;
    memset(&info, 0, sizeof info);
    socklen_t len = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        return EF_ESYS;
    /* an older kernel fills less: no rate rather than a zero read as "slow" */
    if (len < offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof info.tcpi_delivery_rate)
        return EF_ESYS;
    *bytes_per_second = info.tcpi_delivery_rate;
    *app_limited = info.tcpi_delivery_rate_app_limited ? 1 : 0;
    return EF_OK;
}
