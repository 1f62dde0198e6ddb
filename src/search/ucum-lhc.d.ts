/** The part of @lhncbc/ucum-lhc the search uses (the package ships no types). */
declare module '@lhncbc/ucum-lhc' {
  interface UcumLhcUtils {
    convertToBaseUnits(
      unit: string,
      value: number,
    ): { status: string; magnitude?: number; unitToExp?: Record<string, number>; msg?: string[] };
  }
  export const UcumLhcUtils: { getInstance(): UcumLhcUtils };
}
