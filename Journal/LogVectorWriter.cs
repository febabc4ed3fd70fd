using Journal.Cil;

namespace Journal;

/// <summary>
/// Where <see cref="LogItem.FormatLog"/> writes an item's state: a sequence of regions in one preallocated buffer
/// (the item's log vector). Adding a region allocates nothing; adding more regions or bytes than the item reported in
/// <see cref="LogItem.GetLogSize"/> throws before anything is written.
/// </summary>
/// <remarks>Copies of the writer share the same vector, so passing it by value is fine.</remarks>
public readonly ref struct LogVectorWriter
{
    private readonly LogVector _vector;

    internal LogVectorWriter(LogVector vector) => _vector = vector;

    /// <summary>Regions added so far.</summary>
    public int RegionCount => _vector.RegionCount;

    /// <summary>Bytes added so far.</summary>
    public int BytesWritten => _vector.DataBytes;

    /// <summary>Adds a region of <paramref name="length"/> bytes and returns it for the caller to fill.</summary>
    /// <exception cref="InvalidOperationException">The item writes more than it reported.</exception>
    public Span<byte> AddRegion(int length) => _vector.AddRegion(length);

    /// <summary>Adds a region holding a copy of <paramref name="data"/>.</summary>
    /// <exception cref="InvalidOperationException">The item writes more than it reported.</exception>
    public void AddRegion(ReadOnlySpan<byte> data) => data.CopyTo(_vector.AddRegion(data.Length));
}
