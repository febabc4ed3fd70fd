using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Journal.Format;
using Journal.Storage;

namespace Samples.KeyValue;

/// <summary>
/// The two encodings of one key: the <i>logged form</i> (what <see cref="KeyItem.FormatLog"/> writes into the journal)
/// and the <i>home slot</i> (what write-back and recovery write into the home file, slot <c>n</c> at byte
/// <c>n * 1024</c>).
/// </summary>
/// <remarks>
/// <para>Logged form, little-endian: <c>u8 flags</c> (1 = deleted), <c>u8 key length</c>, <c>u16 value length</c>, the
/// key, then the value, both UTF-8.</para>
/// <para>Home slot, 1024 bytes (two sectors), little-endian:</para>
/// <code>
/// offset size field
///      0    4 magic 0x3153564B ("KVS1")
///      4    4 CRC-32C of bytes 8 .. 24 + length
///      8    8 LSN the slot reflects (Lsn.Value)
///     16    4 length of the logged form
///     20    4 zero
///     24    n the logged form
/// </code>
/// <para>A slot that fails its magic or CRC (never written, or torn by a crash) reads as empty: recovery then replays
/// every logged copy of the key, because a slot is only torn while the log still holds the copy being written.</para>
/// </remarks>
public static class KeySlot
{
    /// <summary>Bytes in one slot.</summary>
    public const int Bytes = 1024;

    /// <summary>Sectors in one slot.</summary>
    public const int Sectors = Bytes / BlockDevice.SectorSize;

    /// <summary>Bytes before the logged form.</summary>
    public const int HeaderBytes = 24;

    /// <summary>Longest logged form a slot holds.</summary>
    public const int MaxLoggedBytes = Bytes - HeaderBytes;

    /// <summary>Bytes before the key in the logged form.</summary>
    public const int LoggedHeaderBytes = 4;

    /// <summary>Longest key, in UTF-8 bytes.</summary>
    public const int MaxKeyBytes = 255;

    private const uint Magic = 0x3153564B;

    /// <summary>The first sector of slot <paramref name="slot"/>.</summary>
    public static long SectorOf(ulong slot) => checked((long)slot * Sectors);

    /// <summary>
    /// Encodes <paramref name="key"/> and <paramref name="value"/> (null: deleted) in the logged form.
    /// </summary>
    /// <exception cref="ArgumentException">The key is empty or too long, or key and value do not fit a slot.</exception>
    public static byte[] EncodeLogged(string key, string? value)
    {
        int keyBytes = Encoding.UTF8.GetByteCount(key);
        int valueBytes = value is null ? 0 : Encoding.UTF8.GetByteCount(value);
        if (keyBytes is 0 or > MaxKeyBytes)
            throw new ArgumentException($"key of {keyBytes} UTF-8 bytes: keys are 1 to {MaxKeyBytes} bytes", nameof(key));
        if (LoggedHeaderBytes + keyBytes + valueBytes > MaxLoggedBytes)
            throw new ArgumentException($"key {key}: {keyBytes + valueBytes} bytes of key and value do not fit a slot (at most {MaxLoggedBytes - LoggedHeaderBytes})", nameof(value));
        var logged = new byte[LoggedHeaderBytes + keyBytes + valueBytes];
        logged[0] = value is null ? (byte)1 : (byte)0;
        logged[1] = (byte)keyBytes;
        BinaryPrimitives.WriteUInt16LittleEndian(logged.AsSpan(2), (ushort)valueBytes);
        Encoding.UTF8.GetBytes(key, logged.AsSpan(LoggedHeaderBytes));
        if (value is not null) Encoding.UTF8.GetBytes(value, logged.AsSpan(LoggedHeaderBytes + keyBytes));
        return logged;
    }

    /// <summary>Decodes a logged form: the key and its value (null: deleted).</summary>
    /// <exception cref="InvalidDataException">The bytes are no logged form.</exception>
    public static (string Key, string? Value) DecodeLogged(ReadOnlySpan<byte> logged)
    {
        if (logged.Length < LoggedHeaderBytes || logged[0] > 1)
            throw new InvalidDataException($"logged key of {logged.Length} bytes: bad header");
        int keyBytes = logged[1], valueBytes = BinaryPrimitives.ReadUInt16LittleEndian(logged[2..]);
        if (keyBytes == 0 || LoggedHeaderBytes + keyBytes + valueBytes != logged.Length || (logged[0] == 1 && valueBytes != 0))
            throw new InvalidDataException($"logged key of {logged.Length} bytes: lengths {keyBytes} and {valueBytes} do not match");
        string key = Encoding.UTF8.GetString(logged.Slice(LoggedHeaderBytes, keyBytes));
        string? value = logged[0] == 1 ? null : Encoding.UTF8.GetString(logged.Slice(LoggedHeaderBytes + keyBytes, valueBytes));
        return (key, value);
    }

    /// <summary>Fills <paramref name="slot"/> (<see cref="Bytes"/> long) with <paramref name="logged"/> as of <paramref name="lsn"/>.</summary>
    public static void Write(Span<byte> slot, Lsn lsn, ReadOnlySpan<byte> logged)
    {
        slot.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(slot, Magic);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[8..], lsn.Value);
        BinaryPrimitives.WriteInt32LittleEndian(slot[16..], logged.Length);
        logged.CopyTo(slot[HeaderBytes..]);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[4..], Checksum(slot, logged.Length));
    }

    /// <summary>Reads a slot: false if it is empty or damaged; else the LSN it reflects and its logged form.</summary>
    public static bool TryRead(ReadOnlySpan<byte> slot, out Lsn lsn, out ReadOnlySpan<byte> logged)
    {
        lsn = Lsn.Zero;
        logged = default;
        if (BinaryPrimitives.ReadUInt32LittleEndian(slot) != Magic) return false;
        int length = BinaryPrimitives.ReadInt32LittleEndian(slot[16..]);
        if (length < LoggedHeaderBytes || length > MaxLoggedBytes) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(slot[4..]) != Checksum(slot, length)) return false;
        lsn = Lsn.FromValue(BinaryPrimitives.ReadUInt64LittleEndian(slot[8..]));
        logged = slot.Slice(HeaderBytes, length);
        return true;
    }

    private static uint Checksum(ReadOnlySpan<byte> slot, int length) =>
        Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, slot.Slice(8, HeaderBytes - 8 + length));
}
