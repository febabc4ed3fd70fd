namespace Journal.Testing;

/// <summary>Copies of device images without first zeroing the new array (images run to several MiB).</summary>
internal static class ImageCopy
{
    internal static byte[] Of(byte[] source)
    {
        byte[] copy = GC.AllocateUninitializedArray<byte>(source.Length);
        source.CopyTo(copy, 0);
        return copy;
    }
}
