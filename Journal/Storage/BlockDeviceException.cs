namespace Journal.Storage;

/// <summary>An I/O error on a block device, naming the device and the sector.</summary>
public class BlockDeviceException : IOException
{
    /// <summary>Creates the error.</summary>
    public BlockDeviceException(string device, long sector, string problem, Exception? inner = null)
        : base($"{device}: {problem}", inner)
    {
        Device = device;
        Sector = sector;
    }

    /// <summary>The device's name (a file path for file devices).</summary>
    public string Device { get; }

    /// <summary>The first sector of the failed operation.</summary>
    public long Sector { get; }
}
