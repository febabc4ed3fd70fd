using Journal.Storage;

namespace Journal.Format;

/// <summary>
/// Where a log lives: <paramref name="BlockCount"/> 512-byte blocks of <paramref name="Device"/> starting at sector
/// <paramref name="StartSector"/>. Block <c>b</c> of the log is sector <c>StartSector + b</c>.
/// </summary>
/// <param name="Device">The device holding the log (not owned: the caller disposes it).</param>
/// <param name="StartSector">The device sector of log block 0.</param>
/// <param name="BlockCount">The size of the log in blocks.</param>
public readonly record struct LogRegion(BlockDevice Device, long StartSector, uint BlockCount)
{
    /// <summary>A region covering the whole of <paramref name="device"/>.</summary>
    public static LogRegion WholeDevice(BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        long n = Math.Min(device.SectorCount, LogFormat.MaxLogBlocks);
        return new LogRegion(device, 0, (uint)n);
    }

    /// <summary>The device name, for error messages.</summary>
    public string Name => Device?.Name ?? "(no device)";

    /// <summary>Size of the region in bytes.</summary>
    public long Bytes => (long)BlockCount << LogFormat.BlockShift;

    /// <summary>
    /// Throws <see cref="JournalArgumentException"/> (one line naming the device) unless the region lies on its device
    /// and has between <see cref="LogFormat.MinLogBlocks"/> and <see cref="LogFormat.MaxLogBlocks"/> blocks.
    /// </summary>
    public void Validate()
    {
        if (Device is null) throw new JournalArgumentException("log region: no device given");
        if (StartSector < 0)
            throw new JournalArgumentException($"{Device.Name}: log start sector {StartSector} is negative");
        if (BlockCount < LogFormat.MinLogBlocks || BlockCount > LogFormat.MaxLogBlocks)
            throw new JournalArgumentException(
                $"{Device.Name}: log of {BlockCount} blocks is outside {LogFormat.MinLogBlocks}..{LogFormat.MaxLogBlocks} blocks");
        if (StartSector + BlockCount > Device.SectorCount)
            throw new JournalArgumentException(
                $"{Device.Name}: log sectors {StartSector}..{StartSector + BlockCount - 1} lie beyond the end of the device ({Device.SectorCount} sectors)");
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} sectors {StartSector}+{BlockCount}";
}
