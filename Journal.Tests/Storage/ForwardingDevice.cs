using Journal.Storage;

namespace Journal.Tests.Storage;

/// <summary>A test device that passes every call to <see cref="Inner"/>; a subclass overrides what its test changes.</summary>
public abstract class ForwardingDevice(BlockDevice inner) : BlockDevice
{
    /// <summary>The device every call goes to.</summary>
    protected BlockDevice Inner { get; } = inner;

    public override string Name => Inner.Name;
    public override long SectorCount => Inner.SectorCount;
    protected override void ReadCore(long sector, Span<byte> buffer) => Inner.Read(sector, buffer);
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data) => Inner.Write(sector, data);
    protected override void FlushCore() => Inner.Flush();
    protected override void ExtendCore(long sectorCount) => Inner.Extend(sectorCount);
}
