using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Journal.Format;

/// <summary>
/// A log sequence number: the cycle (how many times the log has wrapped, starting at 1) and the block within the
/// log where a record's header sits. Ordered by cycle, then block. Written as <c>cycle:block</c>.
/// On disk it is a little-endian 64-bit value: cycle in the high 32 bits, block in the low 32.
/// </summary>
public readonly struct Lsn : IEquatable<Lsn>, IComparable<Lsn>
{
    /// <summary>Creates an LSN.</summary>
    public Lsn(uint cycle, uint block) { Cycle = cycle; Block = block; }

    /// <summary>No LSN (cycle 0 never occurs in a written log).</summary>
    public static Lsn Zero => default;

    /// <summary>The wrap count, from 1.</summary>
    public uint Cycle { get; }

    /// <summary>The block of the record header, relative to the start of the log.</summary>
    public uint Block { get; }

    /// <summary>True for <see cref="Zero"/>.</summary>
    public bool IsZero => Cycle == 0 && Block == 0;

    /// <summary>The packed 64-bit form (cycle high, block low).</summary>
    public ulong Value => ((ulong)Cycle << 32) | Block;

    /// <summary>Unpacks <see cref="Value"/>.</summary>
    public static Lsn FromValue(ulong value) => new((uint)(value >> 32), (uint)value);

    /// <summary>Parses <c>cycle:block</c>.</summary>
    public static bool TryParse(string? text, out Lsn lsn)
    {
        lsn = default;
        if (text is null) return false;
        int colon = text.IndexOf(':');
        if (colon <= 0) return false;
        if (!uint.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out uint c)) return false;
        if (!uint.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out uint b)) return false;
        lsn = new Lsn(c, b);
        return true;
    }

    /// <inheritdoc/>
    public bool Equals(Lsn other) => Value == other.Value;
    /// <inheritdoc/>
    public override bool Equals([NotNullWhen(true)] object? obj) => obj is Lsn other && Equals(other);
    /// <inheritdoc/>
    public override int GetHashCode() => Value.GetHashCode();
    /// <inheritdoc/>
    public int CompareTo(Lsn other) => Value.CompareTo(other.Value);
    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Cycle}:{Block}");

    /// <summary>Equality.</summary>
    public static bool operator ==(Lsn a, Lsn b) => a.Value == b.Value;
    /// <summary>Inequality.</summary>
    public static bool operator !=(Lsn a, Lsn b) => a.Value != b.Value;
    /// <summary>Order.</summary>
    public static bool operator <(Lsn a, Lsn b) => a.Value < b.Value;
    /// <summary>Order.</summary>
    public static bool operator >(Lsn a, Lsn b) => a.Value > b.Value;
    /// <summary>Order.</summary>
    public static bool operator <=(Lsn a, Lsn b) => a.Value <= b.Value;
    /// <summary>Order.</summary>
    public static bool operator >=(Lsn a, Lsn b) => a.Value >= b.Value;
    /// <summary>The larger of two LSNs.</summary>
    public static Lsn Max(Lsn a, Lsn b) => a >= b ? a : b;
}
