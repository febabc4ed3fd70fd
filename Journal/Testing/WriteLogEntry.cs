using Journal.Storage;

namespace Journal.Testing;

/// <summary>One operation in a <see cref="WriteLog"/>, in the global order of completion across its devices.</summary>
public sealed class WriteLogEntry
{
    private readonly byte[]? _data;

    internal WriteLogEntry(int index, int deviceId, string deviceName, WriteLogEntryKind kind, long sector, byte[]? data,
        long newSectorCount, int durableBefore, string? note)
    {
        Index = index;
        DeviceId = deviceId;
        DeviceName = deviceName;
        Kind = kind;
        Sector = sector;
        _data = data;
        NewSectorCount = newSectorCount;
        DurableBefore = durableBefore;
        Note = note;
    }

    /// <summary>Position in the log (0-based).</summary>
    public int Index { get; }

    /// <summary>The device (see <see cref="WriteLog.Devices"/>); -1 for a <see cref="WriteLogEntryKind.Mark"/>.</summary>
    public int DeviceId { get; }

    /// <summary>The device's name; empty for a mark.</summary>
    public string DeviceName { get; }

    /// <summary>What was done.</summary>
    public WriteLogEntryKind Kind { get; }

    /// <summary>First sector written (writes only).</summary>
    public long Sector { get; }

    /// <summary>Sectors written (writes only).</summary>
    public int SectorCount => (_data?.Length ?? 0) >> BlockDevice.SectorShift;

    /// <summary>The data written (writes only).</summary>
    public ReadOnlyMemory<byte> Data => _data;

    internal byte[]? RawData => _data;

    /// <summary>The device's size after a growth (extends only).</summary>
    public long NewSectorCount { get; }

    /// <summary>
    /// For a flush: the log position when the flush was issued. Every write of this device with a smaller index had
    /// completed before the flush began and is durable once the flush is recorded; writes between that position and
    /// the flush entry raced with it and are not. For a write-back: the log position when it was issued; the device's
    /// writes before it are on the storage device once the write-back is recorded (durable after a later shared flush).
    /// </summary>
    public int DurableBefore { get; }

    /// <summary>The note of a mark.</summary>
    public string? Note { get; }

    /// <summary>True for writes and growths, the entries that change an image.</summary>
    public bool ChangesImage => Kind is WriteLogEntryKind.Write or WriteLogEntryKind.Extend;

    /// <inheritdoc/>
    public override string ToString() => Kind switch
    {
        WriteLogEntryKind.Write => $"#{Index} write {DeviceName}[{DeviceId}] sector {Sector} +{SectorCount}",
        WriteLogEntryKind.Flush => $"#{Index} flush {DeviceName}[{DeviceId}] (durable before #{DurableBefore})",
        WriteLogEntryKind.WriteBack => $"#{Index} write-back {DeviceName}[{DeviceId}] (written before #{DurableBefore})",
        WriteLogEntryKind.Extend => $"#{Index} extend {DeviceName}[{DeviceId}] to {NewSectorCount} sectors",
        _ => $"#{Index} mark \"{Note}\"",
    };
}
