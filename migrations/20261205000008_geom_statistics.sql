-- PostgreSQL plans every box page anew (query-api sends them unprepared, so that a box around
-- a town and one around a continent get different plans), and each plan estimates the box's
-- share of the points from the spatial statistics of geom, once per spatial index it
-- considers; points_box_share reads them once more. At the default target (100) PostGIS keeps
-- a grid of 10,000 cells, stored compressed, which every estimate decompressed: planning a
-- box page took 0.19 ms at a million points, and decompressing was among PostgreSQL's top
-- costs under the load test. A 20 x 20 grid is small enough to be stored as it is: planning
-- takes 0.075 ms. Its estimates are coarser (the 1-degree box around Paris: 0.08 % for 0.36 %
-- counted), which is enough to tell a box that holds under 1 % of the points from a larger
-- one, the only choice made from them.
ALTER TABLE points ALTER COLUMN geom SET STATISTICS 20;
ANALYZE points;
