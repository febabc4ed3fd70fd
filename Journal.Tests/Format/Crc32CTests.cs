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
