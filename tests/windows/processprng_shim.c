/*
 * processprng_shim.c: a TEST-ONLY bcryptprimitives.dll for running the Windows build under
 * Wine 8.0 (Debian 12's wine64). Never shipped: `make windows` does not include it.
 *
 * Why: Rust's standard library on Windows gets its random bytes (for HashMap seeds) from
 * ProcessPrng in bcryptprimitives.dll, which every supported Windows (10 and later) has.
 * Wine 8.0's bcryptprimitives.dll lacks that export, so a program loading ylokh.dll stops
 * at start-up with an unresolved import. tests/windows.rs builds this DLL with MinGW and
 * puts it beside the test programs, where the loader finds it first; it forwards to
 * BCryptGenRandom, which Wine has. Newer Wine releases have ProcessPrng themselves.
 */
#include <windows.h>
#include <bcrypt.h>

/* Same contract as Windows': fills `data` with `len` random bytes; always returns TRUE. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            RaiseFailFastException(NULL, NULL, 0); /* Windows' ProcessPrng cannot fail */
        data += n;
        len -= n;
    }
    return TRUE;
}
