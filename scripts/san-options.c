/*
 * Preloaded (after libasan, before libubsan) into nginx by the test
 * harness for SANITIZE=address runs.
 *
 * gcc's UBSan runtime reads UBSAN_OPTIONS only when it reports its first
 * error, and it reads them from /proc/self/environ.  In an nginx worker
 * that area holds the process title by then (nginx's setproctitle()
 * writes over argv and environ), so print_stacktrace=1 would be lost and
 * reports would reach stderr (error.log) without a stack.  This copies
 * UBSAN_OPTIONS while the environment is intact and hands them to the
 * runtime through the documented __ubsan_default_options() hook.
 *
 * (UBSan's log_path= does not work next to ASan with gcc 12: the report
 * goes to stderr anyway, so the harness reads error.log for it.)
 */

#include <stdlib.h>
#include <string.h>


static char  flashsale_ubsan_options[4096];


__attribute__((constructor))
static void
flashsale_san_options_init(void)
{
    const char  *s;

    s = getenv("UBSAN_OPTIONS");

    if (s != NULL) {
        strncpy(flashsale_ubsan_options, s,
                sizeof(flashsale_ubsan_options) - 1);
    }
}


const char *
__ubsan_default_options(void)
{
    return flashsale_ubsan_options;
}
