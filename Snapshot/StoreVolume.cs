using Journal;
using Journal.Storage;

namespace Snapshot;

/// <summary>
/// A volume of the store: the origin or one snapshot. Sector-addressed (512 bytes), asynchronous, safe for many
/// concurrent callers. A snapshot volume reads as the origin did when the snapshot was created, plus the snapshot's own
/// writes; the origin reads as written.
/// </summary>
public abstract class StoreVolume
{
    private protected StoreVolume(SnapshotStore store, string name, long sectors)
    {
        Store = store;
        Name = name;
        SectorCount = sectors;
    }

    /// <summary>The store this volume belongs to.</summary>
    public SnapshotStore Store { get; }

    /// <summary><c>origin</c> or the snapshot's name.</summary>
    public string Name { get; }

    /// <summary>Size in sectors (every snapshot has the origin's size).</summary>
    public long SectorCount { get; }

    /// <summary>True for the origin.</summary>
    public abstract bool IsOrigin { get; }

    /// <summary>Reads whole sectors starting at <paramref name="sector"/>.</summary>
    public abstract ValueTask ReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes whole sectors starting at <paramref name="sector"/>. For the origin: when it returns, the data it
    /// displaced is durable in every snapshot that needed it. The write itself is durable when it returns only with
    /// <see cref="StoreOptions.WriteThrough"/>; otherwise after <see cref="SnapshotStore.FlushAsync"/>.
    /// </summary>
    public ValueTask WriteAsync(long sector, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        WriteAsync(sector, data, WriteFlags.None, cancellationToken);

    /// <summary>
    /// Writes whole sectors starting at <paramref name="sector"/>, as <see cref="WriteAsync(long, ReadOnlyMemory{byte}, CancellationToken)"/>;
    /// with <see cref="WriteFlags.Fua"/> the data is also durable when it returns (forced unit access: the device the
    /// write went to is flushed, shared with concurrent callers).
    /// </summary>
    public abstract ValueTask WriteAsync(long sector, ReadOnlyMemory<byte> data, WriteFlags flags, CancellationToken cancellationToken = default);

    private protected void CheckRange(long sector, int length, string op)
    {
        if ((length & (BlockDevice.SectorSize - 1)) != 0)
            throw new SnapshotArgumentException($"{Name}: {op} length {length} bytes is not a whole number of {BlockDevice.SectorSize}-byte sectors");
        if (sector < 0 || sector + (length >> BlockDevice.SectorShift) > SectorCount)
            throw new SnapshotArgumentException($"{Name}: {op} of {length >> BlockDevice.SectorShift} sectors at sector {sector} is beyond the end ({SectorCount} sectors)");
    }

    /// <inheritdoc/>
    public override string ToString() => $"{GetType().Name}({Name}, {SectorCount} sectors)";
}

/// <summary>The origin volume.</summary>
internal sealed class OriginVolume : StoreVolume
{
    public OriginVolume(SnapshotStore store, long sectors) : base(store, "origin", sectors) { }

    public override bool IsOrigin => true;

    public override ValueTask ReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, buffer.Length, "read");
        return Store.OriginReadAsync(sector, buffer, cancellationToken);
    }

    public override ValueTask WriteAsync(long sector, ReadOnlyMemory<byte> data, WriteFlags flags, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, data.Length, "write");
        return Store.OriginWriteAsync(sector, data, (flags & WriteFlags.Fua) != 0, cancellationToken);
    }
}

/// <summary>A snapshot volume.</summary>
internal sealed class SnapshotVolume : StoreVolume
{
    internal SnapshotVolume(SnapshotStore store, SnapshotState state, long sectors) : base(store, state.Name, sectors) => State = state;

    internal SnapshotState State { get; }

    public override bool IsOrigin => false;

    public override ValueTask ReadAsync(long sector, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, buffer.Length, "read");
        return Store.SnapshotReadAsync(State, sector, buffer, cancellationToken);
    }

    public override ValueTask WriteAsync(long sector, ReadOnlyMemory<byte> data, WriteFlags flags, CancellationToken cancellationToken = default)
    {
        CheckRange(sector, data.Length, "write");
        return Store.SnapshotWriteAsync(State, sector, data, (flags & WriteFlags.Fua) != 0, cancellationToken);
    }
}

/// <summary>Options of one write (<see cref="StoreVolume.WriteAsync(long, ReadOnlyMemory{byte}, WriteFlags, CancellationToken)"/>).</summary>
[Flags]
public enum WriteFlags
{
    /// <summary>Durable after a later <see cref="SnapshotStore.FlushAsync"/> (block-device semantics).</summary>
    None = 0,

    /// <summary>Forced unit access: durable when the write returns.</summary>
    Fua = 1,
}
