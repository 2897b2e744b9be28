/*
 * A stand-in for bcryptprimitives.dll, for running netnat's Windows test binaries under Wine
 * (.ci/windows-wine.sh builds it with mingw and puts it beside each .exe).
 *
 * Why: Rust's std (1.78+) draws its random numbers (HashMap seeds, tempfile names) from
 * ProcessPrng in bcryptprimitives.dll, which every Windows 10+ has but Wine 8.0 (Debian 12)
 * does not ship, so every Rust .exe fails to start there. This DLL exports ProcessPrng and
 * forwards to RtlGenRandom (advapi32's SystemFunction036), which Wine implements with the
 * host's entropy. Not used on real Windows.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE; /* documented to always succeed */
}
