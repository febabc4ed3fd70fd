using System.IO.Hashing;

namespace Journal.Format;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of every log record and every checkpoint.
/// A thin wrapper over System.IO.Hashing (<see cref="Crc32.HashToUInt32(Crc32ParameterSet, ReadOnlySpan{byte})"/>
/// with <see cref="Crc32ParameterSet.Crc32C"/>, hardware accelerated). Initial value and final XOR are 0xFFFFFFFF, so
/// <c>Compute("123456789") == 0xE3069283</c>.
/// </summary>
internal static class Crc32C
{
    /// <summary>The CRC-32C of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, data);

    /// <summary>
    /// Continues a finished CRC over more data: <c>Append(Compute(a), b) == Compute(a + b)</c>, and
    /// <c>Append(0, b) == Compute(b)</c>. Costs one <see cref="Compute"/> of <paramref name="data"/> plus a shift of
    /// <paramref name="crc"/> over its length (a few dozen carry-less multiplications in software); to checksum one
    /// buffer in several pieces an incremental <see cref="Crc32"/> (<c>new Crc32(Crc32ParameterSet.Crc32C)</c>) is
    /// cheaper.
    /// </summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        uint tail = Compute(data);
        return crc == 0 || data.IsEmpty ? crc ^ tail : tail ^ Shift(crc, data.Length);
    }

    /// <summary>
    /// The CRC-32C of <paramref name="data"/> with the four bytes at <paramref name="offset"/> taken as zero (a record
    /// whose header holds its own CRC). One pass over the data through a per-thread incremental hasher; allocates
    /// nothing after a thread's first call.
    /// </summary>
    internal static uint ComputeWithZeroedWord(ReadOnlySpan<byte> data, int offset)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, data.Length - 4);
        var h = t_hasher ??= new Crc32(Crc32ParameterSet.Crc32C);
        h.Reset();
        h.Append(data[..offset]);
        h.Append([0, 0, 0, 0]);
        h.Append(data[(offset + 4)..]);
        return h.GetCurrentHashAsUInt32();
    }

    [ThreadStatic] private static Crc32? t_hasher;

    // ---------------------------------------------------------------------------------------------------------------
    // Append's shift. A CRC is affine in its input: running the register over n more bytes from state R gives
    // M^(8n)·R xor F(b), where F(b) is the run from state 0. With the 0xFFFFFFFF initial value and final XOR this makes
    // Append(c, b) = Compute(b) xor M^(8n)·c, and M^(8n)·c is c multiplied by x^(8n) modulo the polynomial (bit-
    // reflected arithmetic, as in zlib's crc32_combine). x^(8n) is built from the powers x^(2^k) in XPow2.
    // ---------------------------------------------------------------------------------------------------------------

    private const uint Polynomial = 0x82F63B78; // reflected Castagnoli polynomial

    /// <summary>x^(2^k) mod P for k = 0..63, reflected (bit 31 is x^0).</summary>
    private static readonly uint[] XPow2 = BuildXPow2();

    private static uint[] BuildXPow2()
    {
        var t = new uint[64];
        uint p = 1u << 30; // x^1
        for (int k = 0; k < t.Length; k++)
        {
            t[k] = p;
            p = MultiplyModP(p, p);
        }
        return t;
    }

    /// <summary>a·b mod P, both reflected.</summary>
    private static uint MultiplyModP(uint a, uint b)
    {
        uint m = 1u << 31, p = 0;
        while (true)
        {
            if ((a & m) != 0)
            {
                p ^= b;
                if ((a & (m - 1)) == 0) return p;
            }
            m >>= 1;
            b = (b & 1) != 0 ? (b >> 1) ^ Polynomial : b >> 1;
        }
    }

    /// <summary><paramref name="crc"/>·x^(8·<paramref name="bytes"/>) mod P: the register run over that many zero bytes from a zero start.</summary>
    private static uint Shift(uint crc, int bytes)
    {
        uint p = 1u << 31; // x^0
        int k = 3;         // bytes * 8 = bytes * 2^3
        for (uint n = (uint)bytes; n != 0; n >>= 1, k++)
            if ((n & 1) != 0) p = MultiplyModP(XPow2[k], p);
        return MultiplyModP(p, crc);
    }
}
