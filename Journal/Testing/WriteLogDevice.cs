namespace Journal.Testing;

/// <summary>A device registered in a <see cref="WriteLog"/> (one per <see cref="RecordingBlockDevice"/>).</summary>
public sealed class WriteLogDevice
{
    internal WriteLogDevice(int id, string name, long initialSectorCount, int registeredAt)
    {
        Id = id;
        Name = name;
        InitialSectorCount = initialSectorCount;
        RegisteredAt = registeredAt;
    }

    /// <summary>The id entries and images use.</summary>
    public int Id { get; }

    /// <summary>The device's name.</summary>
    public string Name { get; }

    /// <summary>Size when recording began.</summary>
    public long InitialSectorCount { get; }

    /// <summary>The log position when recording began; its initial image is the device's content then.</summary>
    public int RegisteredAt { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Name}[{Id}] ({InitialSectorCount} sectors at registration, from #{RegisteredAt})";
}
