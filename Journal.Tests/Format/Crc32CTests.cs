using System.Text;
using Journal.Format;

namespace Journal.Tests.Format;

public class Crc32CTests
{
    [Fact]
    public void Known_answer_for_123456789() =>
        Assert.Equal(0xE3069283u, Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")));

    [Fact]
    public void Known_answer_for_32_zero_bytes() =>
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));

    [Fact]
    public void Empty_input_is_zero() => Assert.Equal(0u, Crc32C.Compute(ReadOnlySpan<byte>.Empty));

    [Fact]
    public void Matches_bitwise_reference_at_every_length_and_alignment()
    {
        var rng = new Random(12345);
        var data = new byte[1024 + 8];
        rng.NextBytes(data);
        for (int align = 0; align < 8; align++)
            for (int len = 0; len <= 1024; len++)
            {
                var span = data.AsSpan(align, len);
                Assert.True(Reference(span) == Crc32C.Compute(span), $"length {len}, alignment {align}");
            }
    }

    [Fact]
    public void Incremental_equals_one_pass()
    {
        var rng = new Random(7);
        var data = new byte[3000];
        rng.NextBytes(data);
        uint whole = Crc32C.Compute(data);
        for (int split = 0; split <= data.Length; split += 37)
        {
            uint c = Crc32C.Compute(data.AsSpan(0, split));
            c = Crc32C.Append(c, data.AsSpan(split));
            Assert.Equal(whole, c);
        }
        // Many small pieces.
        uint p = 0;
        for (int off = 0; off < data.Length; off += 5) p = Crc32C.Append(p, data.AsSpan(off, Math.Min(5, data.Length - off)));
        Assert.Equal(whole, p);
    }

    [Fact]
    public void Append_continues_from_any_crc_over_any_length()
    {
        // Append shifts the first CRC over the second piece's length: check lengths across every power of two the
        // shift composes (0 bytes up to 64 KiB + odd remainders) against one pass of the bitwise reference.
        var rng = new Random(99);
        var data = new byte[80_000];
        rng.NextBytes(data);
        foreach (int first in new[] { 0, 1, 3, 8, 511, 4096 })
            foreach (int second in new[] { 0, 1, 2, 7, 64, 513, 4095, 65536, 65536 + 4093 })
            {
                uint expected = Reference(data.AsSpan(0, first + second));
                uint c = Crc32C.Append(Crc32C.Compute(data.AsSpan(0, first)), data.AsSpan(first, second));
                Assert.True(expected == c, $"first {first}, second {second}");
            }
    }

    [Fact]
    public void ZeroedWord_equals_the_checksum_of_a_copy_with_that_word_cleared()
    {
        var rng = new Random(3);
        var data = new byte[8192];
        rng.NextBytes(data);
        foreach (int offset in new[] { 0, 1, 28, 511, 4096, data.Length - 4 })
        {
            var copy = (byte[])data.Clone();
            copy.AsSpan(offset, 4).Clear();
            Assert.Equal(Reference(copy), Crc32C.ComputeWithZeroedWord(data, offset));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Crc32C.ComputeWithZeroedWord(data, data.Length - 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Crc32C.ComputeWithZeroedWord(data, -1));
    }

    [Fact]
    public void System_IO_Hashing_incremental_hasher_agrees_with_the_wrapper()
    {
        var rng = new Random(11);
        var data = new byte[10_000];
        rng.NextBytes(data);
        var h = new System.IO.Hashing.Crc32(System.IO.Hashing.Crc32ParameterSet.Crc32C);
        for (int off = 0; off < data.Length; off += 777) h.Append(data.AsSpan(off, Math.Min(777, data.Length - off)));
        Assert.Equal(Crc32C.Compute(data), h.GetCurrentHashAsUInt32());
        Assert.Equal(Reference(data), h.GetCurrentHashAsUInt32());
    }

    [Fact]
    public void A_flipped_bit_changes_the_checksum()
    {
        var data = new byte[512];
        uint good = Crc32C.Compute(data);
        for (int bit = 0; bit < data.Length * 8; bit += 13)
        {
            data[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.NotEqual(good, Crc32C.Compute(data));
            data[bit / 8] ^= (byte)(1 << (bit % 8));
        }
    }

    private static uint Reference(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return ~crc;
    }
}

public class LsnTests
{
    [Fact]
    public void Orders_by_cycle_then_block()
    {
        Assert.True(new Lsn(1, 500) < new Lsn(2, 0));
        Assert.True(new Lsn(2, 1) > new Lsn(2, 0));
        Assert.Equal(new Lsn(3, 7), Lsn.FromValue(new Lsn(3, 7).Value));
    }

    [Fact]
    public void Parses_and_prints_cycle_colon_block()
    {
        Assert.True(Lsn.TryParse("12:345", out var l));
        Assert.Equal(new Lsn(12, 345), l);
        Assert.Equal("12:345", l.ToString());
        Assert.False(Lsn.TryParse("12", out _));
        Assert.False(Lsn.TryParse("a:b", out _));
        Assert.False(Lsn.TryParse("-1:2", out _));
    }
}
